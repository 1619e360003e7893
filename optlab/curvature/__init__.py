"""Curvature: Hessian-vector products, Lanczos, spectra, and the analyses built on them."""
