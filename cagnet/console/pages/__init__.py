"""The console's pages, a module per area; each gives its Starlette routes (`routes()`)."""
