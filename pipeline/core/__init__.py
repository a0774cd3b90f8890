"""The ground floor: errors, atomic writes, the content-addressed store and the fan-out
of work through it, executors and their backends (Dask, FAISS), code identity,
timing and plots. Imports nothing above it."""
