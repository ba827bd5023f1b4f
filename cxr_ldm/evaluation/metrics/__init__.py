"""The numbers that judge generated images: classification, FID / KID, diversity, retrieval, memorization."""
