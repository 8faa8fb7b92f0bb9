"""Triage: the study-level urgency of AI analyses, its review by a radiologist."""
