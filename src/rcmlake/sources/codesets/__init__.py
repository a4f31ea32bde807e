"""Code sets: ICD-10-CM (NLM Clinical Tables API or packaged), NPI (NPPES registry API)."""
