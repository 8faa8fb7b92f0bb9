"""Installing MedGemma checkpoints: manifests (:mod:`ai.install.manifest`), sources (a local
folder or an HTTP mirror, :mod:`ai.install.sources`), verified installation and enabling
(:mod:`ai.install.service`) and the ``radiant model`` commands (:mod:`radiant.commands.model`)."""
