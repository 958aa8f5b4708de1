"""Export of a trained :class:`~videoccam.model.videoccam_model.VideoCCAMModel` (design.md section 5).

* :mod:`.hf_model` merges the LoRA adapters (:mod:`.lora_merge`) into the single-folder Hugging Face model, in
  memory; :mod:`.hf_folder` writes it with its tokenizer (:mod:`.tokenizer`, :mod:`.chat_template`), image
  processor and generation config (how Video-CCAM v1.2 was released).
* :mod:`.xtuner_layout` writes xtuner's adapter layout (``llm_adapter/``, ``visual_encoder_adapter/``,
  ``projector/``), what ``xtuner convert pth_to_hf`` writes (how Video-CCAM v1.0 was released).

``VideoCCAMModel.to_hf`` (called by ``xtuner convert pth_to_hf``) and ``tools/convert_to_hf.py`` call them.
"""
