"""The bottom layer: small standard-library helpers that every RadiantAI package may import.

It sits below ``ai`` (which must not import ``appliance``) and below ``appliance``, ``sync``,
``provisioning`` and ``ui``; nothing here imports any of them.

- :mod:`radiant_common.durable`: files that survive a power cut (fsync, atomic replace).
"""
