"""photomap: turn a photo backup into thumbnails, CNN feature vectors and an interactive similarity map."""
__version__ = "0.1.0"
