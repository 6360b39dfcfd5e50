"""Rate-distortion evaluation: one path for every codec, classical or learned.

    from neuralcodecs.eval import evaluate, plot, load_curve
    evaluate(["jpeg", "webp"], "kodak/", "out/rd", workers=4)   # per_image.csv, <codec>.json, bd.*, rd.png
    plot(["out/rd/jpeg.json"], "rd.png", references=["compressai-kodak/bpg_444_x265_ycbcr.json"])

Modules: sweep (the jobs and files), bd (BD-rate, BD-PSNR, RD-AUC), references (curve files), figures (rd.png), report
(index.html).
"""
from .bd import bd, bd_table, common_interval, efficient_points, psnr_at, rd_auc
from .figures import draw_rd, plot
from .references import Curve, load_curve, load_curves, load_references, make_curve
from .sweep import evaluate, list_images

__all__ = ["evaluate", "plot", "draw_rd", "load_curve", "load_curves", "load_references", "make_curve", "Curve", "bd", "bd_table",
           "common_interval", "efficient_points", "psnr_at", "rd_auc", "list_images"]
