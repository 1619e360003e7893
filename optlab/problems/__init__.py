"""What is optimized: small modules of pure functions over pytrees of arrays."""
