"""The end-to-end demo: above the data engine and the trainer, it chains both (``python -m moss_demo.demo``)."""
