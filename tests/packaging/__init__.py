"""The package as users install it: the built wheel, its extras and its base install."""
