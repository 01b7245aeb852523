"""Which evaluated cases count as failures: low Dice, or (without tumour) a false-positive volume."""

from MedSegLensLib.models.evaluation import FALSE_POSITIVE_ML, REGIONS, failure_cases
from MedSegLensLib.models.failure_map import markdown_table


def row(case_id: str, dice: float, ref_ml: float, pred_ml: float, population: str = "adult") -> dict:
    return {
        "case_id": case_id,
        "population": population,
        "ref_volume_ml": ref_ml,
        "pred_volume_ml": pred_ml,
        **{f"dice_{r}": dice for r in REGIONS},
        **{f"hd95_{r}": 0.0 for r in REGIONS},
    }


def test_tumour_cases_fail_on_low_dice_and_healthy_cases_on_false_positive_volume():
    rows = [
        row("good", 0.9, 50.0, 48.0),
        row("bad", 0.3, 50.0, 20.0),
        row("stray-voxels", 0.0, 0.0, FALSE_POSITIVE_ML / 4, population="healthy"),
        row("phantom-tumour", 0.0, 0.0, FALSE_POSITIVE_ML * 5, population="healthy"),
    ]
    failed = {f["case_id"]: f["regions"] for f in failure_cases(rows)}
    assert failed == {"bad": "WT TC ET", "phantom-tumour": "FP"}
    table = markdown_table({"unet": rows})
    assert "| unet | healthy | 2 |" in table and "| 1/2 |" in table
