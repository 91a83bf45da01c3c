// PLACEHOLDER
typedef int ddx_placeholder_unet_plain;
