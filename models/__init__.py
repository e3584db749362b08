"""Model artifacts: the pinned manifest, the installer, conversions and exports.

Programs find an installed model with ``models.manifest.artifact_path(name, models_dir)``.
"""
