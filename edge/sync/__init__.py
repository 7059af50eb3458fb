"""Upstream delivery targets: the EPCIS 2.0 REST capture client and the file-drop folder."""
