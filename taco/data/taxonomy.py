"""TACO's taxonomy (official annotations.json): category id, name, supercategory, image count.

The counts are the number of images holding each category in the official 1,500-image file; the
synthetic generator uses them to reproduce TACO's class imbalance.
"""

from __future__ import annotations

TACO_CATEGORIES: tuple[tuple[int, str, str, int], ...] = (
    (0, "Aluminium foil", "Aluminium foil", 43),
    (1, "Battery", "Battery", 2),
    (2, "Aluminium blister pack", "Blister pack", 6),
    (3, "Carded blister pack", "Blister pack", 1),
    (4, "Other plastic bottle", "Bottle", 45),
    (5, "Clear plastic bottle", "Bottle", 225),
    (6, "Glass bottle", "Bottle", 74),
    (7, "Plastic bottle cap", "Bottle cap", 185),
    (8, "Metal bottle cap", "Bottle cap", 55),
    (9, "Broken glass", "Broken glass", 15),
    (10, "Food Can", "Can", 20),
    (11, "Aerosol", "Can", 10),
    (12, "Drink can", "Can", 151),
    (13, "Toilet tube", "Carton", 3),
    (14, "Other carton", "Carton", 79),
    (15, "Egg carton", "Carton", 9),
    (16, "Drink carton", "Carton", 41),
    (17, "Corrugated carton", "Carton", 41),
    (18, "Meal carton", "Carton", 27),
    (19, "Pizza box", "Carton", 3),
    (20, "Paper cup", "Cup", 62),
    (21, "Disposable plastic cup", "Cup", 91),
    (22, "Foam cup", "Cup", 11),
    (23, "Glass cup", "Cup", 4),
    (24, "Other plastic cup", "Cup", 2),
    (25, "Food waste", "Food waste", 7),
    (26, "Glass jar", "Glass jar", 4),
    (27, "Plastic lid", "Lid", 69),
    (28, "Metal lid", "Lid", 6),
    (29, "Other plastic", "Other plastic", 171),
    (30, "Magazine paper", "Paper", 5),
    (31, "Tissues", "Paper", 36),
    (32, "Wrapping paper", "Paper", 11),
    (33, "Normal paper", "Paper", 68),
    (34, "Paper bag", "Paper bag", 23),
    (35, "Plastified paper bag", "Paper bag", 0),
    (36, "Plastic film", "Plastic bag & wrapper", 310),
    (37, "Six pack rings", "Plastic bag & wrapper", 4),
    (38, "Garbage bag", "Plastic bag & wrapper", 20),
    (39, "Other plastic wrapper", "Plastic bag & wrapper", 184),
    (40, "Single-use carrier bag", "Plastic bag & wrapper", 49),
    (41, "Polypropylene bag", "Plastic bag & wrapper", 3),
    (42, "Crisp packet", "Plastic bag & wrapper", 35),
    (43, "Spread tub", "Plastic container", 9),
    (44, "Tupperware", "Plastic container", 4),
    (45, "Disposable food container", "Plastic container", 37),
    (46, "Foam food container", "Plastic container", 13),
    (47, "Other plastic container", "Plastic container", 6),
    (48, "Plastic glooves", "Plastic glooves", 4),
    (49, "Plastic utensils", "Plastic utensils", 29),
    (50, "Pop tab", "Pop tab", 71),
    (51, "Rope & strings", "Rope & strings", 28),
    (52, "Scrap metal", "Scrap metal", 12),
    (53, "Shoe", "Shoe", 6),
    (54, "Squeezable tube", "Squeezable tube", 6),
    (55, "Plastic straw", "Straw", 110),
    (56, "Paper straw", "Straw", 4),
    (57, "Styrofoam piece", "Styrofoam piece", 78),
    (58, "Unlabeled litter", "Unlabeled litter", 269),
    (59, "Cigarette", "Cigarette", 227),
)


def supercategories() -> list[str]:
    """Supercategory names in order of their first category id (TACO's own order)."""
    seen: dict[str, None] = {}
    for _, _, sup, _ in TACO_CATEGORIES:
        seen.setdefault(sup, None)
    return list(seen)
