"""`imgclf review` and `imgclf suggest`: look at what the audit found, fix labels, label next."""
