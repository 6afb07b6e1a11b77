"""Training data: the dataset, buckets, captions, image I/O and the latent cache."""
