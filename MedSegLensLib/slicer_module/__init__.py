"""The Slicer module's code below its Qt glue: what `MedSegLens/MedSegLens.py` calls, and nothing else does.

`logic` (scene in, a worker job, scene out), `steering` (the steering request,
preview and Accept), `overlay` (the latent overlay node), `compatibility` (the
oldest Slicer supported), `requirements` (first-use installs), `reloading`
(the Reload button), `self_test` (the in-Slicer self-test's steps). Code the
browser viewer shares (`latent_browser`, `steering_contract`, `scene`) lives
below this package.
"""
