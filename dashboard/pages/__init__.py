"""One module per page. Each has PATH, NAME, `layout(**query)` (Dash pages hands it the URL's query string),
`register(app, ctx)` (its callbacks), and plain functions the callbacks call, which the tests and
bench/dashboard_speed.py call directly."""
