"""Tiny random Grounding DINO, SAM2-video and Depth Anything V2 models of transformers' real classes,
for the stage tests.

`sam2_video` needs torchvision's Python transforms (SAM2's processors); its tests run it in a child
process beside a side-installed torchvision (see test_grounded_sam2.py).
"""

import torch


def grounding_dino(folder):
    """A `GroundingDinoForObjectDetection` (Swin-tiny-ish backbone, d_model 32) and its processor."""
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,  # fmt: skip
        GroundingDinoProcessor,
        SwinConfig,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "ball", "cup", "dog", "red"]
    (folder / "vocab.txt").write_text("\n".join(words))
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 192, "longest_edge": 256}),
        tokenizer=BertTokenizer(str(folder / "vocab.txt")),
    )
    swin = SwinConfig(window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], image_size=192,
                      out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4])  # fmt: skip
    text = {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8,
            "max_position_embeddings": 16, "model_type": "bert", "vocab_size": len(words)}  # fmt: skip
    torch.manual_seed(0)
    config = GroundingDinoConfig(d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
                                 decoder_attention_heads=4, encoder_ffn_dim=8, decoder_ffn_dim=8, num_queries=5,
                                 num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, use_timm_backbone=False,
                                 backbone_config=swin, max_text_len=8, text_config=text)  # fmt: skip
    return GroundingDinoForObjectDetection(config).eval(), processor


def sam2_video(size: int = 256, seed: int = 0):
    """A `Sam2VideoModel` (default Hiera-tiny widths, one memory-attention layer) at `size` px, and its
    processor. The object-score head is biased to "present": with random weights SAM2 would otherwise
    declare the object absent on every frame and return empty masks."""
    from transformers import Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor

    vision = dict(backbone_config=dict(model_type="sam2_hiera_det_model", image_size=size),
                  backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2])  # fmt: skip
    config = Sam2VideoConfig(vision_config=vision, prompt_encoder_config=dict(image_size=size), image_size=size,
                             memory_attention_rope_feat_sizes=[size // 16] * 2, memory_attention_num_layers=1)  # fmt: skip
    torch.manual_seed(seed)
    model = Sam2VideoModel(config).eval()
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    processor = Sam2VideoProcessor(
        Sam2ImageProcessor(size={"height": size, "width": size}, mask_size={"height": size // 4, "width": size // 4}),
        Sam2VideoVideoProcessor(size={"height": size, "width": size}),
    )
    return model, processor


def depth_anything():
    """A `DepthAnythingForDepthEstimation` (DINOv2 backbone, hidden 32) and its processor, at 28 px."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                            image_size=28, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)  # fmt: skip
    model = DepthAnythingForDepthEstimation(DepthAnythingConfig(backbone_config=backbone, fusion_hidden_size=8,
                                                                reassemble_hidden_size=32, neck_hidden_sizes=[8] * 4,
                                                                head_hidden_size=8)).eval()  # fmt: skip
    return model, DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False)
