/* Classify handwritten digits with a LeNet-5 that convgen compiled: plain C, no Python.
 *
 *     classify digits.f32 labels.u8
 *
 * digits.f32: N images of 1x32x32 float32 (C order, raw); labels.u8: N bytes.
 * Prints one predicted class per line, then the accuracy.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lenet5.h"

static long file_size(FILE* f)
{
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    return size;
}

int main(int argc, char** argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s digits.f32 labels.u8\n", argv[0]);
        return 2;
    }
    FILE* images = fopen(argv[1], "rb");
    FILE* labels = fopen(argv[2], "rb");
    if (!images || !labels) {
        perror("open");
        return 1;
    }
    long count = file_size(labels);
    if (file_size(images) != count * (long)sizeof(float) * LENET5_INPUT_SIZE) {
        fprintf(stderr, "%s does not hold %ld images of %d floats\n", argv[1], count, LENET5_INPUT_SIZE);
        return 1;
    }
    /* The context holds the workspace (allocated once, here) and the weights (embedded in the library). */
    lenet5_ctx* ctx;
    int status = lenet5_create(&ctx, NULL, NULL);
    if (status != LENET5_OK) {
        fprintf(stderr, "lenet5_create: %s\n", lenet5_status_string(status));
        return 1;
    }
    float input[LENET5_INPUT_SIZE], scores[LENET5_OUTPUT_SIZE];
    long correct = 0;
    for (long i = 0; i < count; i++) {
        unsigned char label;
        if (fread(input, sizeof(float), LENET5_INPUT_SIZE, images) != LENET5_INPUT_SIZE ||
            fread(&label, 1, 1, labels) != 1) {
            fprintf(stderr, "short read at image %ld\n", i);
            return 1;
        }
        status = lenet5_run(ctx, input, scores);
        if (status != LENET5_OK) {
            fprintf(stderr, "lenet5_run: %s\n", lenet5_status_string(status));
            return 1;
        }
        int best = 0;
        for (int c = 1; c < LENET5_OUTPUT_SIZE; c++)
            if (scores[c] > scores[best])
                best = c;
        printf("%d\n", best);
        correct += best == label;
    }
    printf("accuracy: %ld/%ld\n", correct, count);
    lenet5_destroy(ctx);
    fclose(images);
    fclose(labels);
    return 0;
}
