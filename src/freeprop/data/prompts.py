"""Every VLM prompt of the FFP-300K construction pipeline, in one place.

The four local-track prompts are the paper's (§7.1.1, Qwen2.5-VL-72B-Instruct), reproduced as printed
(including its "THREE lowercase category word" wording). The paper's text for the global-track prompts
(§7.1.2) breaks off after its first sentence, and the quality-filter / verification prompts of §3.3 are
not printed at all, so those are ours, written to the paper's description and marked as such.

Each prompt is a `str.format` template; each asks for strict JSON with the key(s) in `KEYS`.
"""

from __future__ import annotations

# --- local editing track (paper §7.1.1, verbatim) ----------------------------------------------------

OBJECT_IDENTIFICATION = """You are given a single video frame. Identify the main editable object in this frame.

Rules:

- Output THREE lowercase category word only (e.g., person, car, dog, ball, cup, bottle, phone, bag, plant, flower, sign, tableware).
- Do not describe background or actions.
- If several candidates exist, choose the smallest salient object that humans often edit/remove (e.g., ball before person in sports; cup before hands on a table).

Output strictly in JSON: {{"Object": "Category"}}"""

ORIGINAL_CAPTION = """You are given a short video. Write ONE concise caption in present tense (18–30 words) describing only the stable scene elements (location, background, persistent subject categories). Rules:

- Describe what remains visually consistent across the clip.
- Use generic categories for moving actors (e.g., “a person”, “three red cups on a white table”, “a yellow taxi by a street”).
- Avoid counts unless they are constant; avoid names, brands, emotions, camera terms.
- No negations (e.g., “no/without”).
- Keep it objective, concrete, and free of text/letters.

Output strictly in JSON: {{"Caption": "The video shows ..."}}"""

REMOVAL_CAPTION = """You are given an original video caption and a target object to remove. Rewrite the caption so it naturally describes the scene as if that object never existed.

Rules:

- Output ONE fluent sentence in present tense, 35–60 words.
- Start with: “ The video shows ... ”
- Do NOT mention the removed object, any pronouns referring to it, or actions tied to it (e.g., holding, touching, pouring).
- Do NOT use negations like “no/without”.
- Do NOT invent new objects or text/letters that the original background did not imply.
- Keep only concrete, persistent background elements (location, surfaces, vehicles, trees, buildings, sky, lighting, colors, furniture).

Input: {{"Original_Caption": "{caption}", "Removal": "{object}"}}

Output strictly in JSON: {{"Remove_Caption": "The video shows ... "}}"""

TASK_DISCRIMINATION = """You are given two short videos:

- Video A: Source Video
- Video B: Generated after editing

Task: Compare A and B by examining the first, middle, and last frames.

Decide:

- swap: an object in A is replaced by a different object in B. The region still contains an object, but its identity changes.
- modification: the same object remains in B, but its attributes (shape, color, texture, style, size, letters, patterns, or fine details) are edited without replacing it with a different object.

If the object’s identity clearly changes, classify as “swap. If only attributes or features change while the object stays the same, classify as “modification.

Output strictly in JSON: {{"Task": "Swap"}} or {{"Task": "Modification"}}"""

# --- global stylization track (paper §3.2 / §7.1.2; the printed prompts break off — ours) ----------

CINEMATIC_CAPTION = """You are given an artistic image. Write ONE cinematic video caption (40–70 words, present tense) for a 5-second video that brings this image to life: describe the scene, its main subjects and a plausible, gentle motion of them or of the camera, the atmosphere and the tone. Describe the content as if it were real footage; do not mention the painting style, brush strokes or the artist.

Output strictly in JSON: {{"Caption": "..."}}"""

STYLE_CAPTION = """You are given a style reference image followed by frames of a source video. Write ONE caption (40–70 words) describing the source video's content rendered in the reference image's style: name the style, its color palette, textures, strokes and lighting, and keep the video's scene and subjects.

Output strictly in JSON: {{"Style_Caption": "..."}}"""

# --- quality control (paper §3.3; prompts not printed — ours) ---------------------------------------

QUALITY_FILTER = """You are given frames of a source video (first, middle, last) followed by the same frames of an edited video. The intended edit was: {edit}

Judge the edited video strictly. It passes only if the edit is clearly carried out on every frame, the edited content looks natural (no smears, ghosting, seams, flicker or distortions), and everything the edit should not touch is preserved.

Output strictly in JSON: {{"Pass": "yes"}} or {{"Pass": "no"}}"""

SEMANTIC_VERIFICATION = """You are given frames of a source video (first, middle, last) followed by the same frames of an edited video, and the instruction that describes the edit: "{instruction}"

Does the instruction correctly and completely describe the difference between the two videos?

Output strictly in JSON: {{"Match": "yes"}} or {{"Match": "no"}}"""

KEYS = {
    "OBJECT_IDENTIFICATION": ("Object",),
    "ORIGINAL_CAPTION": ("Caption",),
    "REMOVAL_CAPTION": ("Remove_Caption",),
    "TASK_DISCRIMINATION": ("Task",),
    "CINEMATIC_CAPTION": ("Caption",),
    "STYLE_CAPTION": ("Style_Caption",),
    "QUALITY_FILTER": ("Pass",),
    "SEMANTIC_VERIFICATION": ("Match",),
}

# Instructions stored with each pair (for instruction-based training and the VLM judge). Ours: the paper
# does not say how its pairs' instructions are phrased.
INSTRUCTIONS = {
    "swap": "Replace the {object} with a different object.",
    "modification": "Change the appearance of the {object}.",
    "removal": "Remove the {object}.",
    "stylization": "Restyle the video: {style}",
}
