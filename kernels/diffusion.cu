// PLACEHOLDER
extern "C" int ddx_placeholder_diffusion(void) { return 0; }
