// PLACEHOLDER
extern "C" int ddx_placeholder_k_conv(void) { return 0; }
