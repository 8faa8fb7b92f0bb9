"""Radiology reports: structured content (ACR sections), immutable hash-linked versions, the
draft -> final -> amended workflow with radiologist sign-off."""
