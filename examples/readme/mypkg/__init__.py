"""The functions and models the recipe in docs/recipes.md (``examples/readme/sotu.yaml``) names."""
