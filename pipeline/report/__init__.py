"""The HTML report: the Jinja2 environment, its filters and templates."""
