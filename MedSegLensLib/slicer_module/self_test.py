"""The module's in-Slicer self-test (CTest py_MedSegLens): the flow on a tiny untrained model and a tiny SAE.

`MedSegLensTest` in MedSegLens/MedSegLens.py inherits `SelfTestSteps` and
provides `makeLogic()`; the steps live here so the module file stays Qt glue.
Runs inside desktop Slicer (and in pytest through the GUI stand-in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_LAYER = "model.1.submodule.2"  # the tiny U-Net's decoder block at half resolution
MODALITIES = ("t1n", "t1c", "t2w", "t2f")


class SelfTestSteps:
    """Mixed into a ScriptedLoadableModuleTest (a unittest.TestCase with `delayDisplay`)."""

    def makeLogic(self) -> Any:  # noqa: N802 - Slicer's naming
        raise NotImplementedError("the module's test class returns its MedSegLensLogic here")

    def setUp(self) -> None:  # noqa: N802
        import slicer

        slicer.mrmlScene.Clear()

    def runTest(self) -> None:  # noqa: N802
        for step in (
            self.test_segment_creates_a_new_segmentation,
            self.test_cancel_leaves_the_scene_unchanged,
            self.test_latents_steering_accept_and_export,
        ):
            self.setUp()
            step()

    # -- tiny inputs ----------------------------------------------------------------------

    def _tinyCase(self) -> dict[str, Any]:  # noqa: N802
        import numpy as np
        import slicer

        rng = np.random.default_rng(0)
        return {
            m: slicer.util.addVolumeFromArray(
                rng.normal(size=(24, 24, 24)).astype("float32"),  # [k, j, i]
                ijkToRAS=np.diag([2.0, 2.0, 2.0, 1.0]),
                name=f"tiny-{m}",
            )
            for m in MODALITIES
        }

    def _tinyModel(self) -> Path:  # noqa: N802
        import slicer
        import torch

        from ..models import build_network, save_model, tiny_config

        torch.manual_seed(0)
        config = tiny_config("unet")
        folder = Path(slicer.util.tempDirectory()) / "tiny-unet"
        save_model(build_network(config), config, folder, overwrite=True)
        return folder

    def _tinySae(self, modelFolder: Path, volumes: dict[str, Any]) -> Path:  # noqa: N802, N803
        """An untrained SAE on the tiny model's decoder layer, with its latents' typical activations on this case."""
        import slicer
        import torch

        from ..data import load_case
        from ..models import load_model
        from ..sae import SAEConfig, SAEInfo, SparseAutoencoder, layer_features, save_sae
        from ..scene import save_volume
        from ..steering import compute_latent_scales, sae_sha256, save_latent_scales

        folder = Path(slicer.util.tempDirectory())
        files = {m: save_volume(node, folder / f"{m}.nii.gz", overwrite=True) for m, node in volumes.items()}
        model = load_model(modelFolder, device="cpu")
        rows = layer_features(model, load_case(files), TINY_LAYER).rows()
        torch.manual_seed(0)
        sae = SparseAutoencoder(SAEConfig(int(rows.shape[1]), 8, 2, "topk"))
        saeFolder = save_sae(sae, folder / "tiny-sae", SAEInfo(model.fingerprint, TINY_LAYER), overwrite=True)
        save_latent_scales(compute_latent_scales(sae, [rows], sae_sha256(saeFolder)), saeFolder)
        return saeFolder

    def _startedLogic(self) -> Any:  # noqa: N802
        logic = self.makeLogic()
        self.assertTrue(logic.ensureCore(lambda done, total, what: None), "the requirements are not installed")
        return logic

    def _waitUntilIdle(self, core: Any, timeout: float = 300) -> None:  # noqa: N802
        import slicer

        core.wait(timeout=timeout, process_events=slicer.app.processEvents)
        self.assertFalse(core.running, "the job did not finish in time")

    def _recorder(self, events: list) -> Any:
        from .logic import JobCallbacks

        return JobCallbacks(
            progress=lambda f, m: events.append(("progress", f)),
            finished=lambda node: events.append(("finished", node)),
            failed=lambda message: events.append(("failed", message)),
        )

    # -- the steps ------------------------------------------------------------------------

    def test_segment_creates_a_new_segmentation(self) -> None:
        self.delayDisplay("Segmenting a tiny case with a tiny model in the background")
        logic, events = self._startedLogic(), []
        logic.core.segment(self._tinyCase(), self._tinyModel(), self._recorder(events))
        self._waitUntilIdle(logic.core)
        logic.shutdown()
        self.assertEqual(events[-1][0], "finished", events[-1])
        fractions = [f for kind, f in events if kind == "progress"]
        self.assertEqual(fractions, sorted(fractions))
        self.assertTrue(events[-1][1].IsA("vtkMRMLSegmentationNode"))
        self.delayDisplay("Test passed")

    def test_cancel_leaves_the_scene_unchanged(self) -> None:
        import slicer

        from .logic import JobCallbacks, node_ids

        self.delayDisplay("Cancelling a running job")
        logic, cancelled = self._startedLogic(), []
        volumes = self._tinyCase()
        before = node_ids(slicer.mrmlScene)
        logic.core.segment(volumes, self._tinyModel(), JobCallbacks(cancelled=lambda: cancelled.append(True)))
        logic.core.cancel()
        self._waitUntilIdle(logic.core)
        logic.shutdown()
        self.assertEqual(cancelled, [True])
        self.assertEqual(node_ids(slicer.mrmlScene), before)
        self.delayDisplay("Test passed")

    def test_latents_steering_accept_and_export(self) -> None:
        import slicer

        from ..scene import overlay_latent, read_provenance
        from .steering import SteeringRequest

        self.delayDisplay("Latents, overlay, steering preview, Accept and export on a tiny model and SAE")
        logic, events = self._startedLogic(), []
        core, volumes, modelFolder = logic.core, self._tinyCase(), self._tinyModel()
        core.analyse(volumes, modelFolder, self._tinySae(modelFolder, volumes), self._recorder(events))
        self._waitUntilIdle(core)
        self.assertEqual(events[-1][0], "finished", events[-1])
        segmentation = events[-1][1]
        rows = core.analysis.table.view()
        self.assertGreater(len(rows), 0)
        latent = rows[0].latent

        core.show_latent(latent, self._recorder(events))
        self._waitUntilIdle(core)
        self.assertEqual(events[-1][0], "finished", events[-1])
        self.assertEqual(overlay_latent(events[-1][1]), latent)

        core.preview(SteeringRequest((latent,), (2.0,), "additive"), self._recorder(events))
        self._waitUntilIdle(core)
        self.assertEqual(events[-1][0], "finished", events[-1])
        accepted = core.accept()
        self.assertNotEqual(accepted.GetID(), segmentation.GetID())
        provenance = read_provenance(accepted)
        self.assertEqual((provenance.mode, provenance.latents, provenance.strengths), ("additive", [latent], [2.0]))
        self.assertEqual(provenance.source_segmentation, segmentation.GetName())
        exported = core.export_segmentation(
            accepted, Path(slicer.util.tempDirectory()) / "tiny-corrected.seg.nrrd", overwrite=True
        )
        self.assertTrue(exported.is_file())
        logic.shutdown()
        self.delayDisplay("Test passed")
