"""Stock face media (likeness video + voice) for the meeting bot; see generate.py."""

from .generate import MediaToolMissing, default_cache_dir, ensure_face_media, ensure_face_media_async

__all__ = ["MediaToolMissing", "default_cache_dir", "ensure_face_media", "ensure_face_media_async"]
