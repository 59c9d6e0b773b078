"""Symbology encoders: raw data → ``Symbol`` (module matrix + facts). No output formats here."""
