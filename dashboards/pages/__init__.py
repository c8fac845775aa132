"""One module per page; each has `register(app)` adding its page (and JSON twin) and its actions."""
