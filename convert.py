#!/usr/bin/env python3
"""``python convert.py --input_model x.pt2 --output_format onnx --quantization int8 --optimize_for cpu``

The same as ``edgeport convert``; see README.md.
"""

from edgeport.cli.main import convert_main

if __name__ == "__main__":
    convert_main()
