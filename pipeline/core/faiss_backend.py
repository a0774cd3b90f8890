"""FAISS, imported lazily: a missing or broken wheel is a BackendMissing with the fix."""

from pipeline.core.errors import BackendMissing


def load_faiss(needed_by: str):
    """The faiss module; ``needed_by`` names the feature in the error (e.g. "LTAU")."""
    try:
        import faiss
    except ImportError as err:
        raise BackendMissing(f"{needed_by} needs FAISS: pip install faiss-cpu") from err
    return faiss
