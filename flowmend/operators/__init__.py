"""The built-in typed operators, one module each; importing this package registers them."""
