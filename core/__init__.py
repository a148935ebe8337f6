"""The model and the scene engine. Free of click, tqdm, qgis and the training loop."""
