"""Entities, spaces, attributes and AOI."""
