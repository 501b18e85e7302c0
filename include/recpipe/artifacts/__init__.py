"""What the stages hand each other through the store, read and written in one place:
model artifacts and champions (``registry``) and a date's feature tables (``features``)."""
