"""Looking at finished runs together: compare's rows, its tables, the HTML/Markdown report. No JAX here."""
