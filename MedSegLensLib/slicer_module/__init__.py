"""The Slicer module's logic without Qt: what `MedSegLens/MedSegLens.py` calls, and nothing else does.

`logic` (scene in, a worker job, scene out), `steering` (the steering request,
preview and Accept), `overlay` (the latent overlay node), `compatibility` (the
oldest Slicer supported), `requirements` (first-use installs). Code the browser viewer shares
(`latent_browser`, `steering_contract`, `scene`) lives below this package.
"""
