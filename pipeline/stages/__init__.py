"""The pipeline's stages, one module each as dvc.yaml runs them (``python -m pipeline <stage>``):
load the inputs, call the core, write the outputs. A stage never imports another stage."""
