// PLACEHOLDER
typedef int ddx_placeholder_trainer;
