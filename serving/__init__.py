"""The inference service: FastAPI over one verified model version (see ``serving.app``)."""
