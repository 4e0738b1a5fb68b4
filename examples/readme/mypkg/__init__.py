"""The functions and models the README's recipe (``examples/readme/sotu.yaml``) names."""
