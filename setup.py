"""videoccam: train and fine-tune Video-CCAM video-language models on xtuner.

Install with `bash tools/install.sh` (what the README and CI use). It installs torch 2.13.0 first, then this
package, then xtuner 0.2.0 *without its dependencies*: xtuner asks for an unpinned torchvision, which would
replace a CPU torch by a multi-GB CUDA build (or install a torchvision that fails to import). See
README "Installation" for the measured reasons behind each pin.
"""

from setuptools import find_packages, setup

CORE = [
    "torch>=2.1",  # tools/install.sh pins 2.13.0 (CPU) before this resolves
    "transformers==4.48.0",  # xtuner 0.2.0's pin
    "mmengine==0.10.6",  # xtuner 0.2.0's pin; 0.10.7 fixes none of the CPU issues
    "peft>=0.14.0",
    "datasets>=3.2.0",
    "huggingface-hub>=0.24.0,<1.0",  # transformers 4.48 refuses hub 1.x at import; gradio 6 would pull it
    "accelerate",
    "safetensors",
    "einops",
    "loguru",
    "openpyxl",
    "scikit-image",
    "scipy",
    "SentencePiece",
    "tiktoken",
    "transformers-stream-generator",
    "setuptools>=77.0.3,<81",  # keeps pkg_resources, which mmengine imports
    "decord==0.6.0",
    "av>=14.1",  # PyAV: fallback video decoder; 14.1 gives VideoFrame.rotation (phone videos' display matrix)
    "pillow",
    "numpy",
    "pandas",
    "pyarrow",  # Video-MME parquet
    "tqdm",
    "matplotlib",  # tools/plot_logs.py (mmengine needs it too)
    "tensorboard",  # the configs' visualizer writes TensorBoard event files by default (videoccam.engine.visualizer)
]

EXTRAS = {
    # xtuner itself: install with --no-deps (tools/install.sh does); listed for reference only
    # 0.19.7+ removed a module mmengine 0.10.6 imports; DeepSpeed JIT-builds its ops (shm_comm, cpu_adam) with
    # g++ and ninja at first use, and torch finds ninja on PATH: the wheel puts it in the venv's bin/
    "deepspeed": ["deepspeed>=0.16.2,<0.19.7", "ninja"],
    "gpu": ["bitsandbytes>=0.45.1,<0.46", "torchvision"],  # flash-attn: build with --no-build-isolation
    # tested with gradio 5.50.0 (tools/web_demo.py, tests/tools/test_web_demo.py); gradio 6 needs
    # huggingface-hub>=1, which transformers 4.48 rejects, and changes the Chatbot / launch() API
    "demo": ["gradio>=5.50,<6"],
    "test": ["pytest", "imageio-ffmpeg", "selenium"],
}

setup(
    name="videoccam",
    version="0.1.0",
    description="Train and fine-tune Video-CCAM video-language models with xtuner",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["videoccam", "videoccam.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["videoccam-xtuner-compat=videoccam.xtuner_compat:main"],
        # `lmms-eval --model videoccam` (videoccam/evaluation/lmms_eval_model.py) where lmms-eval is installed
        "lmms_eval.models": ["videoccam = videoccam.evaluation.lmms_eval_model:lmms_eval_manifest"],
    },
)
