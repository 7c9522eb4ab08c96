"""Deployment: ONNX export of BiFormer models (``tools/deploy/export_onnx.py``)."""
from .onnx_export import (OPSETS, ExportError, check_opset, compare, exportable_model,
                          export_onnx, require_deploy_packages, run_onnxruntime)

__all__ = ['OPSETS', 'ExportError', 'check_opset', 'compare', 'exportable_model',
           'export_onnx', 'require_deploy_packages', 'run_onnxruntime']
