// model.estimateMemory() and loadModel({ gpuLayers: "auto" }) over llama.cpp's common/fit.
// Both load the model with no_alloc (metadata and tensor shapes only, no weights read) and
// create a context that reserves its buffers without allocating them, on a worker thread.
//
// common/fit swaps llama.cpp's process-wide logger while it measures and restores it after,
// so two fits at once would restore each other's (stack-allocated) logger: every call here is
// serialized by one mutex. Our own GGUF checks (model_checks.h) run first, as for a real load,
// so a file that would crash llama.cpp's loader is refused before common/fit touches it.
#include "fit.h"

#include "abort_guard.h"
#include "common.h"
#include "context.h"
#include "log.h"

// llama.cpp's common/fit.h: "fit.h" alone would find native/fit.h, so reach it from the
// llama.cpp include directories (common/ and src/ of the pinned tree).
#include "../common/fit.h"
#include "llama-ext.h"
#include "llama.h"

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

namespace llamafuse {

static std::mutex g_fit_mutex;

static bool has_gpu_device() {
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        auto t = ggml_backend_dev_type(ggml_backend_dev_get(i));
        if (t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU) return true;
    }
    return false;
}

struct DeviceMemory {
    std::string name, description, type;
    int64_t total = 0, free = 0;
    uint64_t model = 0, context = 0, compute = 0;
};

static const char * dev_type_name(ggml_backend_dev_t dev) {
    switch (ggml_backend_dev_type(dev)) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
        case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
        case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
        default: return "accel";
    }
}

static Napi::Array devices_to_js(Napi::Env env, const std::vector<DeviceMemory> & devs) {
    Napi::Array out = Napi::Array::New(env, devs.size());
    for (size_t i = 0; i < devs.size(); i++) {
        const DeviceMemory & d = devs[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", d.name);
        o.Set("description", d.description);
        o.Set("type", d.type);
        o.Set("totalMemory", (double) d.total);
        o.Set("freeMemory", (double) d.free);
        o.Set("model", (double) d.model);
        o.Set("context", (double) d.context);
        o.Set("compute", (double) d.compute);
        out.Set(i, o);
    }
    return out;
}

// What estimateMemory and fitParams share: the model file (path, info[0]); the parameters a load
// and createContext would use (the context's from the same resolved options object as
// NativeContext.create, so the answer describes the context createContext would make); and
// run(): the file's own checks, then fit() with the fit mutex held, llama.cpp's last error
// cleared and a GGML_ASSERT turned into an exception.
class FitWorkerBase : public PromiseWorker {
protected:
    FitWorkerBase(const Napi::CallbackInfo & info, const Napi::Object & context_options)
        : PromiseWorker(info.Env()), path_(info[0].As<Napi::String>().Utf8Value()), mparams_(llama_model_default_params()),
          cparams_(context_params_generation(context_options)) {}

    void run() final {
        model_metadata_checked(path_, /*vocab_only=*/false);
        std::lock_guard<std::mutex> lock(g_fit_mutex);
        log_clear_error();
        AbortGuard guard;
        fit();
    }
    virtual void fit() = 0;

    std::string path_;
    llama_model_params mparams_;
    llama_context_params cparams_;
};

// ---- estimateMemory ------------------------------------------------------------------------

class EstimateWorker : public FitWorkerBase {
public:
    EstimateWorker(const Napi::CallbackInfo & info) : FitWorkerBase(info, info[2].As<Napi::Object>()) {
        mparams_.n_gpu_layers = get_i32(info[1].As<Napi::Object>(), "gpuLayers");
    }

protected:
    void fit() override {
        std::vector<ggml_backend_dev_t> devs;
        uint32_t n_layer = 0, n_ctx_train = 0, n_expert = 0;
        common_device_memory_data_vec data;
        try {
            data = common_get_device_memory_data(path_.c_str(), &mparams_, &cparams_, devs, n_layer, n_ctx_train, n_expert, GGML_LOG_LEVEL_ERROR);
        } catch (const GgmlAbort & e) {
            throw CodedError("ERR_INVALID_OPTION", std::string("llama.cpp rejected the parameters: ") + e.what());
        } catch (const std::exception & e) {
            std::string why = log_last_error();
            throw CodedError("ERR_INVALID_MODEL", std::string("cannot estimate memory: ") + e.what() + (why.empty() ? "" : ": " + why));
        }
        // One entry per model device, then the host (CPU and host-visible buffers) last.
        for (size_t i = 0; i < data.size(); i++) {
            DeviceMemory d;
            if (i < devs.size()) {
                d.name = ggml_backend_dev_name(devs[i]);
                d.description = ggml_backend_dev_description(devs[i]);
                d.type = dev_type_name(devs[i]);
            } else {
                d.name = "host";
                d.description = "system memory (CPU and host buffers)";
                d.type = "host";
            }
            d.total = data[i].total;
            d.free = data[i].free;
            d.model = data[i].model;
            d.context = data[i].context;
            d.compute = data[i].compute;
            devices_.push_back(d);
        }
    }
    Napi::Value result(Napi::Env env) override { return devices_to_js(env, devices_); }

private:
    std::vector<DeviceMemory> devices_;
};

static Napi::Value EstimateMemory(const Napi::CallbackInfo & info) {
    return (new EstimateWorker(info))->start();
}

// ---- fitParams -----------------------------------------------------------------------------

class FitWorker : public FitWorkerBase {
public:
    // n_gpu_layers stays at its default: the fit may set it.
    FitWorker(const Napi::CallbackInfo & info) : FitWorkerBase(info, info[1].As<Napi::Object>()) {
        Napi::Object f = info[2].As<Napi::Object>();
        margin_ = (size_t) get_f64(f, "marginBytes");
        min_ctx_ = get_u32(f, "minContextSize");
    }

protected:
    void fit() override {
        std::vector<float> split(llama_max_devices(), 0.0f);
        std::vector<llama_model_tensor_buft_override> overrides(llama_max_tensor_buft_overrides(), {nullptr, nullptr});
        std::vector<size_t> margins(std::max<size_t>(1, llama_max_devices()), margin_);
        common_params_fit_status status;
        try {
            status = common_fit_params(path_.c_str(), &mparams_, &cparams_, split.data(), overrides.data(), margins.data(), min_ctx_, nullptr, GGML_LOG_LEVEL_ERROR);
        } catch (const GgmlAbort & e) {
            throw CodedError("ERR_INVALID_OPTION", std::string("llama.cpp rejected the parameters: ") + e.what());
        }
        if (status == COMMON_PARAMS_FIT_STATUS_ERROR) {
            std::string why = log_last_error();
            throw CodedError("ERR_INVALID_MODEL", "cannot fit " + path_ + " to memory" + (why.empty() ? "" : ": " + why));
        }
        fits_ = status == COMMON_PARAMS_FIT_STATUS_SUCCESS;
        // The fit may move parts of layers to the CPU through tensor overrides, which the load
        // does not take: offload only the layers it placed whole (one override per partial
        // layer), which uses no more device memory than the fit planned.
        int32_t partial = 0;
        if (mparams_.tensor_buft_overrides) {
            for (const auto * o = mparams_.tensor_buft_overrides; o->pattern; o++) partial++;
        }
        if (!has_gpu_device()) gpu_layers_ = 0;
        else if (mparams_.n_gpu_layers < 0) gpu_layers_ = -1;
        else gpu_layers_ = std::max(0, mparams_.n_gpu_layers - partial);
        context_size_ = cparams_.n_ctx;
    }
    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("fits", fits_);
        o.Set("gpuLayers", gpu_layers_);
        o.Set("contextSize", (double) context_size_);
        return o;
    }

private:
    size_t margin_ = 0;
    uint32_t min_ctx_ = 0;
    bool fits_ = false;
    int32_t gpu_layers_ = 0;
    uint32_t context_size_ = 0;
};

static Napi::Value FitParams(const Napi::CallbackInfo & info) {
    return (new FitWorker(info))->start();
}

// ---- contextMemory -------------------------------------------------------------------------

// What a live context's buffers hold (allocated, not estimated), per device and host, in the
// same layout as estimateMemory: tests compare the two.
static Napi::Value ContextMemory(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    NativeContext * c = NativeContext::Unwrap(info[0].As<Napi::Object>());
    llama_context * ctx = c ? c->ctx() : nullptr;
    if (!ctx) throw make_error(env, "ERR_DISPOSED", "the context is disposed");
    const llama_model * model = llama_get_model(ctx);
    const int32_t nd = llama_model_n_devices(model);
    std::vector<DeviceMemory> devs(nd + 1);
    for (int32_t i = 0; i < nd; i++) {
        ggml_backend_dev_t dev = llama_model_get_device(model, i);
        devs[i].name = ggml_backend_dev_name(dev);
        devs[i].description = ggml_backend_dev_description(dev);
        devs[i].type = dev_type_name(dev);
    }
    devs.back().name = "host";
    devs.back().description = "system memory (CPU and host buffers)";
    devs.back().type = "host";
    for (const auto & [buft, mb] : llama_get_memory_breakdown(ctx)) {
        DeviceMemory * d = nullptr;
        ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
        // The CPU's extra buffer types (repacked and AMX weights) are system memory too, as
        // native/patches/0007 counts them in the estimate.
        if (ggml_backend_buft_is_host(buft) || (dev && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU)) {
            d = &devs.back();
        } else if (dev) {
            for (int32_t i = 0; i < nd; i++) if (dev == llama_model_get_device(model, i)) d = &devs[i];
        }
        if (!d) continue;
        d->model += mb.model;
        d->context += mb.context;
        d->compute += mb.compute;
    }
    return devices_to_js(env, devs);
}

// This machine's GPUs as ggml sees them (none on a CPU build): where gpuLayers can go.
static Napi::Value GpuDevices(const Napi::CallbackInfo & info) {
    std::vector<DeviceMemory> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        auto t = ggml_backend_dev_type(dev);
        if (t != GGML_BACKEND_DEVICE_TYPE_GPU && t != GGML_BACKEND_DEVICE_TYPE_IGPU) continue;
        DeviceMemory d;
        d.name = ggml_backend_dev_name(dev);
        d.description = ggml_backend_dev_description(dev);
        d.type = dev_type_name(dev);
        size_t free = 0, total = 0;
        ggml_backend_dev_memory(dev, &free, &total);
        d.free = (int64_t) free;
        d.total = (int64_t) total;
        out.push_back(d);
    }
    return devices_to_js(info.Env(), out);
}

void fit_register(Napi::Env env, Napi::Object exports) {
    exports.Set("gpuDevices", Napi::Function::New(env, GpuDevices));
    exports.Set("estimateMemory", Napi::Function::New(env, EstimateMemory));
    exports.Set("fitParams", Napi::Function::New(env, FitParams));
    exports.Set("contextMemory", Napi::Function::New(env, ContextMemory));
}

} // namespace llamafuse
