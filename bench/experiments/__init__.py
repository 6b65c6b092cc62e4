"""What the models and their data are worth: EBGAN conditioning, min_confidence filtering, the QUALITY.md
table from evaluated cards, and what a consumer's classifier learns from the service's data."""
