"""videoccam: train and fine-tune Video-CCAM video-language models on xtuner.

Install with `bash tools/install.sh` (what the README and CI use). It installs torch 2.13.0 first, then this
package, then xtuner 0.2.0 *without its dependencies*: xtuner asks for an unpinned torchvision, which would
replace a CPU torch by a multi-GB CUDA build (or install a torchvision that fails to import). See
README "Installation" for the measured reasons behind each pin.

Every requirement carries an upper bound below its next major release (for a 0.x package: below 1.0), at or
just above the version tested, so that a fresh install next year gets the stack that was tested, not a release
that dropped support for the pinned transformers / mmengine (PEFT 1.0 does). ``tests/test_setup.py`` checks that
each one is bounded and that the installed versions satisfy them; README "Installation notes" says how to move a
bound. The only unbounded requirements are in ``UNBOUNDED``, each with its reason.
"""

from setuptools import find_packages, setup

# tested versions in brackets (the project's CI venv); each bound is below the next major release
CORE = [
    "torch>=2.1,<3",  # [2.13.0] tools/install.sh pins 2.13.0 (CPU) before this resolves
    "transformers==4.48.0",  # xtuner 0.2.0's pin
    "mmengine==0.10.6",  # xtuner 0.2.0's pin; 0.10.7 fixes none of the CPU issues
    "peft>=0.14.0,<1.0",  # [0.22.0] 1.0 drops transformers < 5.6
    "datasets>=3.2.0,<6",  # [5.0.1]
    "huggingface-hub>=0.24.0,<1.0",  # [0.36.2] transformers 4.48 refuses hub 1.x at import; gradio 6 would pull it
    "accelerate<2",  # [1.16.0]
    "safetensors<1",  # [0.8.0]
    "einops<1",  # [0.8.2]
    "loguru<1",  # [0.8.0]
    "openpyxl<4",  # [3.1.5]
    "scikit-image<1",  # [0.26.0]
    "scipy<2",  # [1.17.1]
    "SentencePiece<1",  # [0.2.3]
    "tiktoken<1",  # [0.14.0]
    "transformers-stream-generator<1",  # [0.0.5]
    "setuptools>=77.0.3,<81",  # [80.10.2] keeps pkg_resources, which mmengine imports
    "decord==0.6.0",
    "av>=14.1,<19",  # [18.1.0] PyAV: fallback video decoder; 14.1 gives VideoFrame.rotation (phone videos)
    "pillow<12",  # [11.3.0]
    "numpy<3",  # [2.4.6]
    "pandas<3",  # [2.3.3]
    "pyarrow<27",  # [26.0.1] Video-MME parquet
    "tqdm<5",  # [4.70.1]
    "matplotlib<4",  # [3.11.2] tools/plot_logs.py (mmengine needs it too)
    "tensorboard<3",  # [2.21.0] the configs' visualizer writes TensorBoard event files by default
]

EXTRAS = {
    # xtuner itself: install with --no-deps (tools/install.sh does); listed for reference only
    # 0.19.7+ removed a module mmengine 0.10.6 imports; DeepSpeed JIT-builds its ops (shm_comm, cpu_adam) with
    # g++ and ninja at first use on GPU hosts (torch finds ninja on PATH: the wheel puts it in the venv's bin/;
    # on CPU hosts our patches build nothing)
    "deepspeed": ["deepspeed>=0.16.2,<0.19.7", "ninja<2"],  # [0.19.6, 1.13.2]
    "gpu": ["bitsandbytes>=0.45.1,<0.46", "torchvision"],  # flash-attn: build with --no-build-isolation
    # tested with gradio 5.50.0 (tools/web_demo.py, tests/tools/test_web_demo.py); gradio 6 needs
    # huggingface-hub>=1, which transformers 4.48 rejects, and changes the Chatbot / launch() API
    "demo": ["gradio>=5.50,<6"],
    "test": ["pytest<10", "pytest-timeout>=2.3,<3", "imageio-ffmpeg<1", "selenium<5"],  # [9.2.0, 2.4.0, 0.8.1, 4.51.0]
}

# requirements without an upper bound, and why (tests/test_setup.py allows exactly these)
UNBOUNDED = {
    "torchvision": "must be the build made for the installed CUDA torch (GPU machines only); pip picks it by torch",
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
