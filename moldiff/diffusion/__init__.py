"""The Gaussian diffusion chain over molecular graphs; it knows nothing of the network."""
