"""The medallion layers: how each one reads its inputs and commits its tables."""
