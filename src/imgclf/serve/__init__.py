"""`imgclf serve`: a REST API and a web page around one loaded model."""
