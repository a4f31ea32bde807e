"""Source readers: SQL databases (EMR), landing files (claims, CPT), code-set APIs."""
