"""The Slicer module's code: what `MedSegLens/MedSegLens.py` calls (its Qt glue included), and nothing else does.

`logic` (scene in, a worker job, scene out), `steering` (the steering request,
preview and Accept), `overlay` (the latent overlay node), `triage_view` (the
loaded case's line in a triage worklist), `section_*` (each panel section's Qt
glue, mixins of the module's widget), `compatibility` (the
oldest Slicer supported), `requirements` (first-use installs), `reloading`
(the Reload button), `self_test` (the in-Slicer self-test's steps). Code the
browser viewer shares (`latent_browser`, `steering_contract`, `scene`) lives
below this package.
"""
